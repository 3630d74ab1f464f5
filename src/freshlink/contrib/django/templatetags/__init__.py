"""Template tags of ``freshlink.contrib.django``: ``{% load freshlink %}``."""
