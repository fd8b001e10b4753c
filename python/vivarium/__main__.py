"""`python -m vivarium ARGS`: the same as the `vivarium` command."""

from vivarium import main

if __name__ == "__main__":
    main()
