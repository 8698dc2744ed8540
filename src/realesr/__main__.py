import sys

from realesr.cli import main

sys.exit(main())
