"""Build or update the assistant's index from corpus/: python ingest.py [--check|--dry-run|--rollback]."""

import sys

from assistant.edges.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog_ingest=True))
