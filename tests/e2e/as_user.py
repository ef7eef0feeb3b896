"""Run roarctl or roard as another user: import as root, then drop privileges.

The checkout (and so the venv) may live where an unprivileged user cannot read, e.g. under
/root; importing first and dropping after keeps the test about what the daemon sees on
its socket (SO_PEERCRED of the connecting process), not about file permissions.

    python as_user.py UID roarctl|roard ARG...
"""

import os
import sys

import grpc._channel  # noqa: F401  (grpc imports it lazily, at the first channel)

import roard.control.client  # (roarctl imports it lazily, for all but tag -- CMD)
import roard.daemon  # noqa: F401  (roard run imports it lazily)
from roard.cli import roarctl_main, roard_main

uid = int(sys.argv[1])
main = {"roarctl": roarctl_main.main, "roard": roard_main.main}[sys.argv[2]]
os.setgroups([])
os.setgid(uid)
os.setuid(uid)
sys.exit(main(sys.argv[3:]))
