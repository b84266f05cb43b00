"""`python -m gtacli` (also what `torchrun -m gtacli ...` runs on every rank)."""

from gtacli.cli.app import main

if __name__ == "__main__":
    main()
