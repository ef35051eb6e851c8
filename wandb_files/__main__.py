"""`python -m wandb_files` is the `wandb-files` command."""

from wandb_files.cli import main

if __name__ == "__main__":
    main()
