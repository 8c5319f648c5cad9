"""User-facing errors: one clear line that names the bad value and the fix."""

import difflib
import numbers


class ZooError(ValueError):
    """A problem with the user's input (config, data, flags, files).

    Tools print `str(error)` as one line and exit 1, without a traceback.
    """


class UnknownNameError(ZooError, KeyError):
    """A name (component, argument, binding) that is not known."""

    def __str__(self):  # KeyError would quote the message.
        return str(self.args[0]) if self.args else ""


def check_positive_ints(owner, **values) -> None:
    """ZooError naming the first argument that is not a positive integer (Python or numpy;
    bools excluded): `check_positive_ints("parti", heads=heads, width=width)`."""
    _check_positive(owner, values, numbers.Integral, "a positive integer")


def check_positive_numbers(owner, **values) -> None:
    """ZooError naming the first argument that is not a positive number (int or float, Python
    or numpy; bools and NaN excluded)."""
    _check_positive(owner, values, numbers.Real, "a positive number")


def _check_positive(owner, values, kind, what) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
            raise ZooError(f"{owner}.{key} must be {what}, got {value!r}")


def closest(name, candidates, n=3):
    """The candidates closest to `name`, best first (may be empty)."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    # Prefix matches help with truncated names ("conv" -> "conv_shaped").
    for c in candidates:
        if len(found) >= n:
            break
        if c not in found and (c.startswith(name) or name.startswith(c)) and len(name) >= 3:
            found.append(c)
    return found


def suggest(name, candidates, what="name"):
    """A sentence: 'did you mean ...? known: ...'."""
    candidates = sorted(candidates)
    near = closest(name, candidates)
    parts = []
    if near:
        parts.append("did you mean " + " or ".join(repr(c) for c in near) + "?")
    if candidates:
        shown = candidates if len(candidates) <= 40 else candidates[:40] + ["..."]
        parts.append(f"(known {what}s: " + ", ".join(shown) + ")")
    else:
        parts.append(f"(no {what}s are known)")
    return " ".join(parts)
