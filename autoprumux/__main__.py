import sys

from autoprumux.cli import main

sys.exit(main())
