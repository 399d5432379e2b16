import sys

from autoprumux.cli.main import main

sys.exit(main())
