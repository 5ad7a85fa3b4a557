"""Helpers behind `fabfile.py`: the lab's hosts from the Ansible inventory, parallel runs, and what a node reports."""
