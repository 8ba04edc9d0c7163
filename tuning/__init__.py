"""Ray Tune sweeps of market-making strategies (``python -m mmray.tune``, docs/tuning.md).

Modules (importing this package does not import Ray):

* :mod:`mmray.tuning.spec` - sweep specifications: typed, frozen dataclasses;
* :mod:`mmray.tuning.config` - YAML/JSON loading and validation of sweep files;
* :mod:`mmray.tuning.validate` - load-time checks of every trial a sweep can run (no solving);
* :mod:`mmray.tuning.presets` - built-in sweeps and the ``--smoke`` transform;
* :mod:`mmray.tuning.seeds` - trial seeds derived from the sweep seed;
* :mod:`mmray.tuning.trainables` - what a trial does (plain function) and the Tune trainable;
* :mod:`mmray.tuning.sweeps` - param spaces, search algorithms, ASHA, trial resources;
* :mod:`mmray.tuning.results` - results table, plots, report, best-policy export;
* :mod:`mmray.tuning.runner` - Ray start-up, resource checks, ``Tuner`` / ``Tuner.restore``, run directories.
"""
