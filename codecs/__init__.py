"""mqbench.codecs"""
