"""c3ae_utils: the reusable code of the C3AE course (compact age estimation, Zhang et al. 2019).

Import modules, not names::

    from c3ae_utils import age_encoding, network
    model = network.build_c3ae()
"""

__version__ = "0.1.0"
