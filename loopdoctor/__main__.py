import sys

from loopdoctor.cli import main

sys.exit(main())
