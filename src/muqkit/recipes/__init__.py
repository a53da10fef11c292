"""Experiments and recipes built on the library: the end-to-end demo (:mod:`muqkit.recipes.demo`) and the
paper's claims experiment (:mod:`muqkit.recipes.claims`).

They sit above ``train/`` and ``eval/`` and compose both; nothing in the library imports them.
"""
