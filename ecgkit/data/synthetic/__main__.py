"""``python -m ecgkit.data.synthetic``: write a synthetic PTB-XL cohort (same as ``ecgkit synth``)."""
import sys

from .cohort import main

sys.exit(main())
