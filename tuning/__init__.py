"""Ray Tune sweeps of market-making strategies (``python -m mmray.tune``, docs/tuning.md).

Modules (importing this package does not import Ray):

* :mod:`mmray.tuning.spec` - sweep specifications: typed, frozen dataclasses;
* :mod:`mmray.tuning.config` - sweep files: each section read and checked (``load_spec``, ``spec_from_dict``);
* :mod:`mmray.tuning.documents` - YAML/JSON text to data, a key given twice refused;
* :mod:`mmray.tuning.reader` - sweep-file wording of the :mod:`mmray.checks` checks, field types from dataclasses;
* :mod:`mmray.tuning.validate` - the sections checked together, and every trial a sweep can run (no solving);
* :mod:`mmray.tuning.presets` - built-in sweeps and the ``--smoke`` transform;
* :mod:`mmray.tuning.seeds` - trial seeds derived from the sweep seed;
* :mod:`mmray.tuning.trainables` - what a trial does (plain function) and the Tune trainable;
* :mod:`mmray.tuning.sweeps` - param spaces, search algorithms, ASHA, trial resources;
* :mod:`mmray.tuning.results` - results table, report, best-policy export (figures: :mod:`mmray.plots`);
* :mod:`mmray.tuning.runner` - Ray start-up, resource checks, ``Tuner`` / ``Tuner.restore``, run directories;
* :mod:`mmray.tuning.rl_sweep` - the ``rl`` kind: RLlib PPO training runs as trials, seeds per configuration.
"""
