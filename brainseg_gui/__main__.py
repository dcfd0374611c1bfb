"""`python -m brainseg_gui ...` is the `brainseg` command."""

from brainseg_gui.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
