"""How things are written in figures and prose. Display only: kept out of the modules whose code is
fingerprinted into cache keys (see results.NOT_NUMERIC), so rewording a label retrains nothing."""

# LaTeX for prose, on one line (an inline \frac would shrink to half the text's height)
TARGET_FORMULAS = {"sinc": r"\sin(5\pi x)/(5\pi x)", "sign": r"\operatorname{sgn}(\sin(5\pi x))"}
# The same as figure titles (matplotlib mathtext), fractions in display size
TARGET_TITLES = {"sinc": r"$y = \dfrac{\sin(5\pi x)}{5\pi x}$", "sign": r"$y = \mathrm{sgn}(\sin(5\pi x))$"}
ACTIVATION_NAMES = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "tanh": "tanh"}
