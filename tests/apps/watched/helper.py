TEXT = "helper 1"
