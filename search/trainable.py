from search.tuning.trainable import *  # noqa: F403  The old path, which Ray pickled into runs made before the move; one release.
