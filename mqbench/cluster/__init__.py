"""Reference cluster processes: launch, inspect, signal and stop the broker instances of a layout."""
