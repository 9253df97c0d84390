"""The numbers task of the session's trained model (`trained_numbers` in
tests/conftest.py), shared by the export tests."""

# The model's longest sequence, and the numbers it trains on: every number
# below 1000 but those ending in 3, which stay unseen.
NUMBERS_MAX_LENGTH = 24
NUMBERS_TRAIN = [n for n in range(1000) if n % 10 != 3]
