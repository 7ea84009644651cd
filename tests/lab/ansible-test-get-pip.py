"""Stand-in for ansible-test's pip bootstrap script (get-pip.py) on machines that only reach PyPI.

ansible-test --venv downloads get-pip from a host this lab cannot reach; it also accepts a
script saved in its cache. This one bootstraps pip with the standard library's ensurepip and
then lets that pip install the exact packages ansible-test asked for (from PyPI).
"""

from __future__ import annotations

import subprocess
import sys

# get-pip.py's own switches, which plain pip does not know.
OWN_FLAGS = {"--no-setuptools", "--no-wheel"}

args = [a for a in sys.argv[1:] if a not in OWN_FLAGS]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "-q"] + args)
