"""Room acoustics owned by the simulation: classical reverberation formulas and the pyroomacoustics engine."""
