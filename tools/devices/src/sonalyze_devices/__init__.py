"""Virtual phones: admin, speakers and microphones that follow the Sonalyze protocol over the real gateway."""
