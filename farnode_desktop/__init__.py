"""FarNode Desktop: lend an NVIDIA GPU to the FarMesh network and get paid for it.

This module stays tiny: the engine launcher imports the package inside the engine's own environment.
"""

__version__ = "0.1.0"
APP_NAME = "FarNode Desktop"
APP_ID = "farnode-desktop"
