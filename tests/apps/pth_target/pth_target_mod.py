"""Reachable only through a .pth file in a venv's site-packages (site.addsitedir)."""

VALUE = "found through a .pth file"
