"""`python -m wandb_files.server` runs the server (the same as `wandb-files server`)."""

from .cli import server_command

if __name__ == "__main__":
    server_command(prog_name="python -m wandb_files.server")
