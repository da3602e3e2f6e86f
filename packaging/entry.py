"""The frozen binary's entry script: the same ``main`` as the ``arcus`` console script."""

from arcus.cli.app import main

if __name__ == "__main__":
    main()
