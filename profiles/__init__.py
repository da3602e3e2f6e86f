"""The shipped profiles (``profiles/*.yaml``), package data of ``arcus.profiles``.

``arcus/profiles`` is a symbolic link to this folder: the files here are the only copy, read by
``arcus.config.sources`` from a checkout, a wheel and the frozen binary alike.
"""
