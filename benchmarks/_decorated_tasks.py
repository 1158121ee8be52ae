"""A module that uses the decorator as a user's module would (the cold decorated-call row imports it).

Only that row's fresh interpreter imports this module, so no other pool's workers pay for wrapt.
"""

from parallelize import parallel


@parallel
def noop(x: object) -> object:
    return x
