"""Inference engines behind the worker: the contract (:mod:`.base`), the registry that maps
``--engine`` names to lazily imported engines (:mod:`.registry`), and the engines themselves
(:mod:`.mock`; real engines are optional extras imported only when chosen).
"""
