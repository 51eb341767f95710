"""``python -m benchmarks`` is ``edge-bench``."""

from benchmarks.cli import main

if __name__ == "__main__":
    main()
