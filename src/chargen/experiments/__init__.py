"""The tutorial experiments that are programs of their own (`chargen alphabet`)."""
