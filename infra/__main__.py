import signal
import sys

from infra.cli import main

# `./dev status | head` should end quietly, as other command-line tools do.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sys.exit(main())
