"""``python -m fishdip``: what launchers run (``accelerate launch -m fishdip train ...``, ``torchrun -m``)."""

from fishdip.cli import main

if __name__ == "__main__":
    main()
