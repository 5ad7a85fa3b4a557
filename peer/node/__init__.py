"""The peer runtime shared by the daemon and the lab: intake, the tangle guard, training and publishing."""
