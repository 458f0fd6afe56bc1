#!/bin/sh
# Playwright's Node.js driver in a session of its own (PLAYWRIGHT_NODEJS_PATH points here; see
# pipeline/gateway/page.py, own_session_driver): Ctrl-C in a terminal signals the whole
# foreground process group, and the driver and its Chromium must not die before the worker
# has stopped the gateway in order.
exec "$WABOT_DRIVER_PYTHON" -c 'import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' "$WABOT_DRIVER_NODE" "$@"
