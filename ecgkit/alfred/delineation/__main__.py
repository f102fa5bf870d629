"""``python -m ecgkit.alfred.delineation train ...``."""
from . import main

raise SystemExit(main())
