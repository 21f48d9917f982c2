"""Room-acoustics numerics shared by measurement and simulation: numpy in, numpy and dataclasses out, no I/O."""
