"""The normal CDF Φ(x) from array-API operations only (needed by exact GELU, docs/math.md §1).

The array API standard has no ``erf``. ``erfc`` below is a vectorised transcription of
the piecewise rational approximations of fdlibm's ``s_erf.c`` (Sun Microsystems, 1993:
"Permission to use, copy, modify, and distribute this software is freely granted,
provided that this notice is preserved."), accurate to about one ulp in float64. Every
branch is evaluated on every element and the right one is selected with ``where``, so
the code has no data-dependent control flow. Backends with a native ``ndtr``
(``scipy.special``, ``torch.special``, ``cupyx.scipy.special``) use it instead; the test
suite checks that both agree with ``math.erfc``.
"""

from __future__ import annotations

import math

# |x| < 0.84375:  erf(x) = x + x * P(x²)/Q(x²)
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
# 0.84375 <= |x| < 1.25:  erf(|x|) = erx + P(|x|-1)/Q(|x|-1)
_ERX = 8.45062911510467529297e-01
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
# 1.25 <= |x| < 1/0.35:  erfc(|x|) = exp(-x² - 0.5625 + R(1/x²)/S(1/x²)) / |x|
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
# 1/0.35 <= |x| < 28: same form with other coefficients
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)

SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _horner(coeffs, t):
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * t + c
    return acc


def erfc(xp, x):
    """Complementary error function, elementwise, float32 or float64 (fdlibm algorithm)."""
    ax = xp.abs(x)
    sign_neg = x < 0
    # regions 1 and 2 are evaluated on x clipped to [-1.25, 1.25] (where they are used),
    # so infinite inputs never reach their rational functions.
    xc = xp.clip(x, -1.25, 1.25)
    # region 1: |x| < 0.84375
    t = xc * xc
    r1 = xc * (_horner(_PP, t) / _horner(_QQ, t))  # erf(x) - x
    small = xp.where(xc < 0.25, 1.0 - (xc + r1), 0.5 - (xc - 0.5 + r1))
    # region 2: 0.84375 <= |x| < 1.25
    s = xp.abs(xc) - 1.0
    pq = _horner(_PA, s) / _horner(_QA, s)
    mid = xp.where(sign_neg, 1.0 + _ERX + pq, 1.0 - _ERX - pq)
    # regions 3 and 4: 1.25 <= |x|; evaluate on a safe argument to avoid 1/0 elsewhere
    big = xp.clip(ax, 1.25, 28.0)
    s = 1.0 / (big * big)
    rs = xp.where(big < 1.0 / 0.35, _horner(_RA, s) / _horner(_SA, s), _horner(_RB, s) / _horner(_SB, s))
    if x.dtype == xp.float64:
        # exp(-x²) with x = hi + lo, hi exact in float32, so hi² is exact (fdlibm's trick)
        hi = xp.astype(xp.astype(big, xp.float32), xp.float64)
        tail = xp.exp(-hi * hi - 0.5625) * xp.exp((hi - big) * (hi + big) + rs) / big
    else:
        tail = xp.exp(-big * big - 0.5625 + rs) / big
    tail = xp.where(ax >= 28.0, xp.zeros_like(tail), tail)
    large = xp.where(sign_neg, 2.0 - tail, tail)
    out = xp.where(ax < 0.84375, small, xp.where(ax < 1.25, mid, large))
    return xp.where(xp.isnan(x), x, out)


def ndtr_generic(xp, x):
    """Standard normal CDF Φ(x) = erfc(-x/√2)/2, accurate in both tails."""
    return 0.5 * erfc(xp, -x * SQRT_HALF)


def normal_pdf(xp, x):
    """Standard normal density φ(x) = exp(-x²/2)/√(2π)."""
    return xp.exp(-0.5 * (x * x)) * INV_SQRT_2PI
