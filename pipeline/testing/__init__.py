"""What tests and benchmarks share: worker processes (:mod:`.workers`), a throwaway PostgreSQL
(:mod:`.postgres`) and the store read back (:mod:`.store`). Production code never imports it
(an import-linter contract in ``make lint`` checks).
"""
