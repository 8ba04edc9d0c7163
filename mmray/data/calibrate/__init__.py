r"""Calibration of the market model (σ, A, k) from limit-order-book events, with intervals.

The model (GLFT 2013, Guéant 2017): the mid follows :math:`dS = \mu\,dt + \sigma\,dW`, and a quote
at distance :math:`\delta` from the mid is filled at rate :math:`\Lambda(\delta) = A e^{-k\delta}` on
each side. Units: prices in the venue's quote currency, time in **seconds** — σ in price/√s,
A in fills/s (per side), k per price unit (``k_per_tick`` = k·tick per tick), μ in price/s.
A parameter file written here is in those units, so use ``T`` in seconds with it.

Each venue/symbol/day shard is reduced by its own consumer (:func:`calibrate_shard`, a Ray task
with a fractional CPU) to the day's estimates, rolling-window estimates and the arrays the
pooled estimate needs; the top level of the result pools every day. The modules, in the order
the data flows through them:

* :mod:`~mmray.data.calibrate.settings` — :class:`Settings`, validated;
* :mod:`~mmray.data.calibrate.events` — a shard's rows reduced to the quote timeline, market
  orders (their reach from the prior mid) and halts;
* :mod:`~mmray.data.calibrate.volatility` — σ (and drift) from mid changes, noise-corrected,
  batch-means intervals, the volatility signature;
* :mod:`~mmray.data.calibrate.intensity` — A and k by bucketed Poisson maximum likelihood,
  profile-likelihood intervals, goodness of fit, the non-parametric intensity per bucket;
* :mod:`~mmray.data.calibrate.windows` — fits per day, per rolling window and pooled;
* :mod:`~mmray.data.calibrate.sharding` — :func:`calibrate`: shards through Ray (or in process);
* :mod:`~mmray.data.calibrate.results` — :class:`Fit`, :class:`Calibration`, JSON and
  parameter files;
* :mod:`~mmray.data.calibrate.simulate` — :func:`simulate_events`, markets with known parameters.

Figures: :func:`mmray.data.plots.plot_calibration`. Estimators, intervals and pitfalls:
``docs/data.md``.

References
----------
Zhou, B. (1996), "High-frequency data and volatility in foreign-exchange rates", JBES 14(1).
Barndorff-Nielsen, Hansen, Lunde, Shephard (2008), "Designing realized kernels", Econometrica 76.
Guéant, O. (2017), "Optimal market making", Appl. Math. Finance 24, arXiv:1605.01862.
Avellaneda, M., Stoikov, S. (2008), "High-frequency trading in a limit order book", Quant. Finance 8.
"""

from mmray.data.calibrate.intensity import GoodnessOfFit, Intensity
from mmray.data.calibrate.results import PARAM_UNITS, Calibration, Fit, write_params_file
from mmray.data.calibrate.settings import Settings
from mmray.data.calibrate.sharding import calibrate, calibrate_shard
from mmray.data.calibrate.simulate import simulate_events
from mmray.data.calibrate.volatility import SIGNATURE_INTERVALS
from mmray.params import load_params_file  # re-exported: the reader of the files written here

__all__ = ["PARAM_UNITS", "SIGNATURE_INTERVALS", "Calibration", "Fit", "GoodnessOfFit", "Intensity", "Settings",
           "calibrate", "calibrate_shard", "load_params_file", "simulate_events", "write_params_file"]
