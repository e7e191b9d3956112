"""The test suite: the real app and the stand-in, over real HTTP."""
