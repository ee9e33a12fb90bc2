"""Start the web chat: python app.py (settings from ASSISTANT_* environment variables)."""

import sys

from assistant.edges.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
