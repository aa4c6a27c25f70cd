"""The LineBridge module: verdicts to the line (OPC UA, Modbus TCP, MQTT) and triggers from it."""
