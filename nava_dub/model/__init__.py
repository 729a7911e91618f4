"""Pure nn.Modules of NAVA and its components: no I/O, nothing imported from outside model/."""
