import sys

from solo_directpred.cli import main

sys.exit(main())
