"""python -m solution.synth (see solution/synth/__init__.py)."""
import sys

from solution.synth import main

sys.exit(main())
