"""The ACGAN: networks, losses and the Lightning module that trains them."""
