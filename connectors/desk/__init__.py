"""The clerk desk and admin pages, and their JSON API."""
