"""mmray: optimal market making with inventory constraints, distributed with Ray.

The core is plain numpy/scipy: parameters (:mod:`mmray.params`), closed forms
(:mod:`mmray.model`), policies and checkpoints (:mod:`mmray.policy`, :mod:`mmray.checkpoint`),
the simulator and backtests (:mod:`mmray.sim`, :mod:`mmray.backtest`). Solvers live in
:mod:`mmray.solvers`, Ray Tune sweeps in :mod:`mmray.tuning`.
"""

__version__ = "0.1.0"

from mmray.backtest import BacktestResult, backtest
from mmray.checkpoint import CheckpointError, load_policy, save_policy
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import ClosedFormPolicy, Policy, TablePolicy
from mmray.strategies import STRATEGIES, make_strategy

__all__ = [
    "STRATEGIES", "BacktestResult", "CheckpointError", "ClosedFormPolicy", "MarketParams",
    "Policy", "ProblemParams", "SimConfig", "TablePolicy", "__version__", "backtest",
    "load_policy", "make_strategy", "save_policy",
]
