"""The Qt-free core of FarNode Desktop: the GUI, the headless node and the tests all drive it."""
