"""Operations on a deployed pipeline: rebuilding the tables from their changelogs
(``rebuild.py``; the command is ``faust -A pipeline rebuild-tables``)."""
