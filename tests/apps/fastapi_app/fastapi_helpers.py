"""A module of the FastAPI test app's own, next to it in working_dir: a reload of an
`isolation main` app must import it afresh (the reload test rewrites this value)."""

HELPER_VERSION = "original"


def total(price: float, quantity: int) -> float:
    return round(price * quantity, 2)
