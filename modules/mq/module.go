package mq

// ModuleName names the module in config keys, logs, health and errors.
const ModuleName = "mq"
